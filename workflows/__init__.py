"""What a user runs: run, score, compress, report and the click CLI in front of them."""
