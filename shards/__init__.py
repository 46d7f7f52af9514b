"""Images and shards: decode, resize and hash downloaded images; write webdataset shards."""
