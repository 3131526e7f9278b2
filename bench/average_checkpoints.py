"""Write the mean update of several adapters of one run (checkpoints copied out of a running request, say)
as one adapter, to judge it with `bench/regate.py --adapter` or `bench/retention_rows.py --adapters`.

`unlearn.average_last` does this inside a run (lethe/unlearn/averaging.py); this is the same mean for
checkpoints a run has already written, so a path can be measured without training it again.

    python bench/average_checkpoints.py --out /tmp/avg /tmp/ckpts/step-{160,180,200,220,240}
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from common import ROOT  # noqa: F401  (puts the repository on sys.path)

from lethe.unlearn.averaging import write_mean_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    write_mean_update(args.adapters, args.out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (args.adapters[-1] / name).is_file():
            shutil.copy(args.adapters[-1] / name, args.out / name)
    print(args.out)


if __name__ == "__main__":
    main()
