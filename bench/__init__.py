"""Benchmarks of the library's batched paths against per-sample loops shaped like the
official code (see ``bench/README.md``). Every script prints one JSON object of timings
measured in one run on one model, and the ratio slow / fast."""
