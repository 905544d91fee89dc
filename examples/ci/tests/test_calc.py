"""Run with `python -m unittest` (no third-party test runner needed in the CI image)."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from calc import add, mean  # noqa: E402


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)

    def test_mean(self) -> None:
        self.assertEqual(mean([1.0, 2.0, 3.0]), 2.0)
        with self.assertRaises(ValueError):
            mean([])


if __name__ == "__main__":
    unittest.main()
