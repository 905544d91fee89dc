"""nosgrid.sim: a seeded, vectorised market simulator built on the rules in ``core``.

>>> from nosgrid.sim import MarketConfig, run_market
>>> run_market(MarketConfig(nodes=100, jobs=1_000), seed=1)["honest_false_slashes"]
0
"""

from nosgrid.sim.market import Kind, MarketConfig, run_market
from nosgrid.sim.report import SimConfig, run_all

__all__ = ["Kind", "MarketConfig", "SimConfig", "run_all", "run_market"]
