"""Where candidate pairs come from, and how images are fetched.

- `urls`: normalisation, host keys, private-address checks, trap heuristics;
- `html`: images (with alt), links and language of a page;
- `robots`: robots.txt per host (Protego); `frontier`: per-host queues and politeness;
- `fetch`: the one HTTP GET (redirects, retries, caps) shared by `pages` and `images`;
- `pages`: the polite page crawler; `images`: the image downloader;
- `urllist`: img2dataset-style URL lists.
"""
