"""Split a labelled table into train.csv and test.csv (stratified), for the demo and benchmarks.

usage: python examples/split_data.py DATA OUT_DIR [--test-frac 0.2] [--seed 0]
"""

import argparse
from pathlib import Path

from mlabel.data import load_examples, read_table
from mlabel.split import split_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("out_dir")
    parser.add_argument("--test-frac", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-cols", nargs="+", default=["TITLE", "ABSTRACT"])
    args = parser.parse_args()
    table = read_table(args.data)
    examples = load_examples(table, args.text_cols)
    train, test = split_examples(examples, args.test_frac, args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_id = table.set_index("ID")
    by_id.loc[train.ids].reset_index().to_csv(out / "train.csv", index=False)
    by_id.loc[test.ids].reset_index().to_csv(out / "test.csv", index=False)
    print(
        f"{len(train)} training rows -> {out / 'train.csv'}, {len(test)} test rows -> {out / 'test.csv'}"
    )


if __name__ == "__main__":
    main()
