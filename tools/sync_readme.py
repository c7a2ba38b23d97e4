"""Copy the capability sections of docs/*.md into README.md (between the CAPABILITIES markers).

    python tools/sync_readme.py

Each docs file starts with its own ``## `` heading; the README holds the same section, which this script
replaces by the file's current text (the "Methods at a glance" table before them is kept)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["bam", "morec", "calitune", "peterrec", "gfcf", "distributed", "evidence"]
END = "<!-- END CAPABILITIES -->"


def main():
    path = os.path.join(ROOT, "README.md")
    readme = open(path, encoding="utf-8").read()
    texts = [open(os.path.join(ROOT, "docs", f"{name}.md"), encoding="utf-8").read().strip() for name in DOCS]
    headings = [text.splitlines()[0] for text in texts]
    for name, heading in zip(DOCS, headings):
        if f"<!-- from docs/{name}.md -->\n{heading}\n" not in readme:
            raise SystemExit(f"README.md has no section '{heading}' (after <!-- from docs/{name}.md -->) before {END}")
    marker = "<!-- from docs/{}.md -->\n"
    first = readme.index(marker.format(DOCS[0]))
    end = readme.index(END)
    body = "\n\n".join(marker.format(name) + text for name, text in zip(DOCS, texts))
    readme = readme[:first] + body + "\n\n" + readme[end:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(readme)


if __name__ == "__main__":
    main()
