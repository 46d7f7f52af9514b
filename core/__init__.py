"""The ground floor every other package stands on: the record schema (`record`), the
stage configs (`config`), local and object storage (`storage`), markers and parquet
(`io`), partitioned datasets (`parts`), a run's folders (`layout`), stats, progress,
stable hashes, the failure summary and the one-line user error. It imports nothing else
of the project."""
