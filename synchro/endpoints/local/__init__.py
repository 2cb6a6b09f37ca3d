"""The local file system, reached through folder descriptors.

``scan`` lists a folder (``_scan.c`` when compiled), ``fds`` opens folders
one component at a time with ``O_NOFOLLOW``, ``filecopy`` copies a file
atomically (``_copy.c`` for small ones when compiled), ``fdtree`` makes,
walks and removes whole trees, ``pool`` runs large copies in threads,
``probe`` measures what the replica's file system can hold (``mounts``
names it).
"""
