"""A replica on an SSH server, reached over SFTP (``sftp://[user@]host[:port]/path``)."""
