"""recbole_ext's packaging (docs/install.md says what is installed and why).

Every value below is a literal: tests/test_main.py reads them with ``ast`` and checks that the pins agree
with requirements*.txt (the tested lock) and that every YAML / params file of the package is shipped.
"""

from setuptools import find_packages, setup

setup(
    name="recbole_ext",
    version="0.1.0",
    description="Multi-interest, multi-objective, calibration and transfer methods for RecBole 1.2.1",
    packages=find_packages(include=["recbole_ext", "recbole_ext.*"]),
    # the defaults (properties/**) and the example configs / params files (examples/: usable by name,
    # `--config_files=bpr_ml-100k.yaml`; the checkout's properties/ links to it)
    package_data={"recbole_ext": ["properties/*.yaml", "properties/*/*.yaml", "examples/*.yaml",
                                  "examples/*.test"]},
    python_requires=">=3.11",
    # The tested stack, pinned exactly as in requirements.txt (a plain `pip install` gets what the tests ran on).
    # RecBole itself is NOT listed: its metadata pins ray<=2.6.3, and every Ray <= 2.6.3 fails to import on
    # NumPy 2 (np.bool8), so pip could never resolve it together with the `tune` extra. It is installed
    # beside this package without its declared dependencies: `pip install --no-deps recbole==1.2.1`
    # (everything of those dependencies that RecBole's code imports is pinned below; see docs/install.md).
    install_requires=[
        "torch==2.13.0",
        "numpy==2.4.6",
        "pandas==2.3.3",
        "scipy==1.17.1",
        "scikit-learn==1.9.1",
        "PyYAML==6.0.3",
        "tqdm==4.70.1",
        "colorlog==4.7.2",
        "colorama==0.4.4",
        "tensorboard==2.21.0",
        "thop==0.1.1.post2209072238",
        "tabulate==0.10.0",
        "texttable==1.7.2",
        "plotly==7.1.0",
        "psutil==7.2.2",
        "matplotlib==3.11.2",
    ],
    # tune: run_hyper.py / `python -m recbole_ext hyper` and --seeds_parallel=ray (== requirements-tune.txt);
    # zoo: RecBole's optional models (NCL: faiss; LightGBM, XGBoost) and HyperTuning (hyperopt) (==
    # requirements-zoo.txt). dgl (KGAT) and torch_scatter (KGIN, MCCLK) have no wheel for this torch;
    # see docs/model-zoo.md.
    extras_require={
        "tune": ["ray[tune]==2.60.0"],
        "zoo": ["faiss-cpu==1.15.1", "lightgbm==4.7.0", "xgboost-cpu==3.2.0", "hyperopt==0.3.0"],
    },
    entry_points={"console_scripts": ["recbole_ext = recbole_ext.__main__:main"]},
)
