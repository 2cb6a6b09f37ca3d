# The atomic copy of one small file (synchro/endpoints/local/_copy.c); see synchro.endpoints.local.filecopy.copy_file.
def copy_small(
    src_dir: int,
    rep_dir: int,
    name: str,
    temp: str,
    keep_owner: bool,
    limit: int,
    keep_mode: bool = True,
    keep_times: bool = True,
    /,
) -> tuple[int, int]: ...

# Linux only: prctl(PR_SET_PDEATHSIG, signum), for the helper process (synchro.pipeline.helper).
def parent_death_signal(signum: int, /) -> None: ...
