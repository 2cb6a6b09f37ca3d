"""A replica in an S3-compatible object store (``s3://bucket/prefix``)."""
