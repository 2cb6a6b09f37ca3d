"""The core of every run, in the order it happens.

``roots`` (check the pair) → ``lock`` (one run per replica) → ``walk`` (scan
both trees, folder by folder) → ``plan`` (the pure planner: typed actions in
a safe order) → the deletion guard in ``engine`` → ``apply`` (carry the
actions out, collecting per-entry failures) → ``report`` (one result
object) and ``log`` (the shared daily file). ``engine.run_cycle`` runs them;
``helper`` shares a run with a second process on machines with two cores.
"""
