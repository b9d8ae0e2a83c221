"""README and docs/ tables generated from the committed results JSON.

A section of README.md or a docs/ page between `<!-- results:SECTION -->` and
`<!-- /results:SECTION -->` (SECTION one of `sections()`, e.g. fig1, or `scoreboard`) is rewritten
from `figures/<base>.json` by `update`; `check` lists the sections whose text disagrees with the JSON.

  python -m icl_lab.studies.readme [--check] [README.md | docs/fig2.md ...]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from icl_lab import results
from icl_lab.io import atomic_write_text, read_json
from icl_lab.results import HEADLINE_DIR

# NAME is a section, or SECTION@FOLDER for a results file kept outside figures/ (e.g. a superseded
# preset's results in experiments/), rendered the same way from `FOLDER/<base>.json`.
_BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+(?:@[\w./-]+)?) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)",
                    re.S)


def sections():
  """Section name -> the study output that renders it."""
  from icl_lab.studies import STUDIES

  return {o.section: o for s in STUDIES.values() for o in s.outputs}


SCOREBOARD = "scoreboard"
DOCS_DIR = Path("docs")


def documents(root: str | Path = ".") -> list[Path]:
  """Every file whose marked sections are generated: README.md and the docs/ pages (those present)."""
  root = Path(root)
  return [p for p in (root / "README.md", *sorted((root / DOCS_DIR).glob("*.md"))) if p.exists()]


def scoreboard(folder: str | Path = HEADLINE_DIR) -> str:
  """One row per results file of every study: criteria met of those checked, the missed ones named."""
  from icl_lab.studies import STUDIES

  lines = ["| study | results file | criteria met | missed |", "|---|---|---|---|"]
  for study in STUDIES.values():
    for out in study.outputs:
      path = Path(folder) / f"{out.base}.json"
      if not path.exists():
        lines.append(f"| [{study.name}](docs/{study.name}.md) | `{out.base}` | not run | |")
        continue
      crit = results.criteria_for(read_json(path), out.criteria)
      met = sum(c.met for c in crit)
      # Inconclusive criteria count as not met and say so.
      missed = "; ".join(c.name + (" (inconclusive)" if c.inconclusive else "") for c in crit if not c.met)
      lines.append(f"| [{study.name}](docs/{study.name}.md) | `{out.base}` | {met} of {len(crit)} | {missed} |")
  return "\n".join(lines)


def render(section: str, folder: str | Path = HEADLINE_DIR) -> str:
  """The markdown of one section, from its committed JSON."""
  if "@" in section:
    section, kept = section.split("@", 1)
    root = Path(folder).resolve().parent  # the repository holding `folder`
    body = render(section, root / kept)
    return body.replace(f"`{HEADLINE_DIR.as_posix()}/", f"`{kept}/", 1)
  if section == SCOREBOARD:
    return f"(generated from `{HEADLINE_DIR.as_posix()}/*.json` by `icl-lab readme`)\n\n{scoreboard(folder)}\n"
  outputs = sections()
  if section not in outputs:
    raise KeyError(f"unknown results section {section!r}; accepted: {', '.join(outputs)}")
  out = outputs[section]
  path = Path(folder) / f"{out.base}.json"
  if not path.exists():
    return f"(`{(HEADLINE_DIR / out.base).as_posix()}.json` has not been written yet)\n"
  payload = read_json(path)
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
  p.add_argument("docs", nargs="*", help="files to rewrite (default: README.md and docs/*.md)")
  p.add_argument("--figures", default=str(HEADLINE_DIR), help="folder of the committed results")
  p.add_argument("--check", action="store_true", help="only report stale sections (exit 1 if any)")
  args = p.parse_args(argv)
  return run(args.docs, args.figures, args.check)


def run(docs: list[str], figures: str | Path, check_only: bool) -> int:
  """`icl-lab readme`: rewrites (or with check_only, lists) the stale sections; exit status 1 when
  checking finds any."""
  stale = 0
  for doc in [Path(d) for d in docs] or documents():
    names = check(doc, figures) if check_only else update(doc, figures)
    stale += len(names)
    for name in names:
      print(f"{'stale' if check_only else 'rewrote'}: {doc}: results:{name}")
  return 1 if check_only and stale else 0


if __name__ == "__main__":
  sys.exit(main())
