from setuptools import find_packages, setup

setup(
    name="recbole_ext",
    version="0.1.0",
    description="Multi-interest, multi-objective, calibration and transfer methods for RecBole 1.2.1",
    packages=find_packages(include=["recbole_ext", "recbole_ext.*"]),
    package_data={"recbole_ext": ["properties/*.yaml", "properties/model/*.yaml", "properties/trainer/*.yaml",
                                  "properties/rerank/*.yaml"]},
    python_requires=">=3.11",
    # RecBole is installed with --no-deps (see Makefile): its declared requirements pull ray.
    install_requires=[
        "recbole==1.2.1",
        "torch>=2.6",
        "numpy>=2",
        "pandas>=2.2",
        "scipy>=1.13",
        "PyYAML",
        "tqdm",
        "colorlog",
        "colorama",
        "tensorboard",
        "texttable",
        "tabulate",
        "psutil",
        "thop",
        "plotly",
        "scikit-learn",
        "matplotlib",
    ],
    # run_hyper.py (parallel hyper-parameter search): pip install -e .[tune] / -r requirements-tune.txt
    # RecBole's optional models (NCL: faiss; LightGBM, XGBoost) and HyperTuning (hyperopt):
    # pip install -e .[zoo] / -r requirements-zoo.txt. dgl (KGAT) and torch_scatter (KGIN, MCCLK) have no
    # wheel for this torch; see docs/model-zoo.md.
    extras_require={
        "tune": ["ray[tune]>=2.40"],
        "zoo": ["faiss-cpu>=1.15", "lightgbm>=4.7", "xgboost-cpu>=3.2", "hyperopt>=0.3"],
    },
)
