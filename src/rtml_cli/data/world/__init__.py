"""A sample world that behaves like a real shop, with its ground truth written down.

``generate_world`` writes an event log, an item catalogue, two bandit logs and a
known click model whose properties are the ones the migration argument rests on,
built in by construction so tests can check them:

- items live in categories; categories form *intent bundles* (keyboards → monitors →
  hdmi cables → monitor stands) that a session walks through in order;
- Zipf-like popularity within and across categories, plus short trending *bursts*
  of single items (what streaming features are for);
- returning users with a long-term taste over bundles, and about half of the
  sessions after the batch-history cutoff from anonymous or new visitors (what a
  batch job cannot serve);
- a session follows one intent, often not the user's long-term taste;
- a view → cart → purchase funnel;
- a distribution shift at a known time: new items launch and become popular,
  bundle popularity and user tastes move;
- bandit logs (a known non-uniform logging policy and a uniform one) with clicks
  drawn from a known ``ClickModel``, so the true value of any policy is computable.

Everything is vectorised with numpy; the event log is generated one day of
sessions at a time (a chunk) so memory stays bounded for the large size. All
randomness comes from ``numpy.random.default_rng`` seeded by ``(seed, stream,
chunk)``: the same seed gives byte-identical files.
"""

from rtml_cli.data.world.bandit import expected_reward, logging_policy_probs, policy_value
from rtml_cli.data.world.common import SIZES, WorldSize
from rtml_cli.data.world.files import find_world, read_world
from rtml_cli.data.world.generate import SAMPLE_WORLD_OUTPUT, generate_world

__all__ = [
    "SAMPLE_WORLD_OUTPUT",
    "SIZES",
    "WorldSize",
    "expected_reward",
    "find_world",
    "generate_world",
    "read_world",
    "logging_policy_probs",
    "policy_value",
]
