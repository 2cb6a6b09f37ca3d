# The atomic copy of one small file (synchro/_copy.c); see synchro.filecopy.copy_file.
def copy_small(
    src_dir: int, rep_dir: int, name: str, temp: str, keep_owner: bool, limit: int, /
) -> tuple[int, int]: ...
