# The compiled scan loop (synchro/endpoints/local/_scan.c); the same as synchro.endpoints.local.scan.python_list_entries.
from .scan import Kind, Meta

def list_entries(
    dir_fd: int, meta_type: type[Meta], kinds: tuple[Kind, Kind, Kind, Kind], /
) -> tuple[dict[str, Meta], dict[str, str]]: ...
