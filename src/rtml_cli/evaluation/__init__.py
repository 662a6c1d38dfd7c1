"""Choosing between models (``rtml evaluate``): three ideas, one subpackage each.

- ``routing``: how to split live traffic between models — A/B tests versus bandits, on
  replay results or planned arms (``rtml evaluate [bandits]``);
- ``ope``: off-policy evaluation — a new policy's value from a log another policy collected
  (``rtml evaluate ope``);
- ``contextual``: contextual bandits versus "most clickable" greedy in a world whose click
  model is known, online and from its logs (``rtml evaluate contextual``).

``contextual`` uses ``ope`` for its offline estimates; nothing else crosses between them.
"""
