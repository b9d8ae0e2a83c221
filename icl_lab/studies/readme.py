"""README result tables generated from the committed results JSON.

A section of README.md between `<!-- results:SECTION -->` and `<!-- /results:SECTION -->`
(SECTION one of `sections()`, e.g. fig1) is rewritten from `figures/<base>.json` by
`update`; `check` lists the sections whose text disagrees with the JSON.

  python -m icl_lab.studies.readme [--check] [README.md]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from icl_lab.io import atomic_write_text, read_json
from icl_lab.results import HEADLINE_DIR

_BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def sections():
  """Section name -> the study output that renders it."""
  from icl_lab.studies import STUDIES

  return {o.section: o for s in STUDIES.values() for o in s.outputs}


def render(section: str, folder: str | Path = HEADLINE_DIR) -> str:
  """The markdown of one section, from its committed JSON."""
  outputs = sections()
  if section not in outputs:
    raise KeyError(f"unknown results section {section!r}; accepted: {', '.join(outputs)}")
  out = outputs[section]
  payload = read_json(Path(folder) / f"{out.base}.json")
  return f"(generated from `{(HEADLINE_DIR / out.base).as_posix()}.json`)\n\n{out.readme(payload)}\n"


def rewrite(text: str, folder: str | Path = HEADLINE_DIR) -> str:
  """`text` with every marked section replaced by its rendering."""
  return _BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), folder) + m.group(4), text)


def check(readme: str | Path = "README.md", folder: str | Path = HEADLINE_DIR) -> list[str]:
  """Names of the marked sections whose text differs from their rendering."""
  text = Path(readme).read_text()
  return [m.group("name") for m in _BLOCK.finditer(text) if m.group("body") != render(m.group("name"), folder)]


def update(readme: str | Path = "README.md", folder: str | Path = HEADLINE_DIR) -> list[str]:
  """Rewrites the marked sections in place; returns the names of those that changed."""
  stale = check(readme, folder)
  if stale:
    atomic_write_text(readme, rewrite(Path(readme).read_text(), folder))
  return stale


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("readme", nargs="?", default="README.md")
  p.add_argument("--figures", default=str(HEADLINE_DIR), help="folder of the committed results")
  p.add_argument("--check", action="store_true", help="only report stale sections (exit 1 if any)")
  args = p.parse_args(argv)
  names = check(args.readme, args.figures) if args.check else update(args.readme, args.figures)
  for name in names:
    print(f"{'stale' if args.check else 'rewrote'}: results:{name}")
  return 1 if args.check and names else 0


if __name__ == "__main__":
  sys.exit(main())
