"""Curation: each step answers keep or drop-with-reason for a `Pair`, or annotates it.

Text side, in the runner's order: `text` (caption rules) -> `dedup` on uid ->
`matching` (query-list entries, using `queries`) -> `language` -> `dedup` on url and
caption (after the filters: it picks a winner among different captions) -> `balance`. Image side,
after download: `image_rules` -> `dedup.dedup_images` (sha256) -> `neardup` (pHash).
Every iterator stage passes pairs that are already dropped through untouched.
"""
