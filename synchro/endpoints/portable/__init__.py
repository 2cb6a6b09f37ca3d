"""A local tree reached through paths, on any system: Windows, and wherever it is chosen.

``tree`` lists a folder with one ``os.scandir`` (never following a link
or a junction), ``replica`` carries out the planner's actions (a temporary
in the target folder, then ``os.replace``), ``attributes`` maps what
Windows holds (read-only, hidden, system) to permission bits, ``lock`` is
the run lock where folders cannot be locked, ``probe`` says what the
replica can hold. See docs/windows.md.
"""
