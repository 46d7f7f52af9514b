"""`make bench`: each peer and the project on the same input in the same run, with the ratio.

Not part of the test suite: these take minutes and measure speed, which the tests never
assert. Results are printed and saved to `runs/bench/results.json`.
"""
