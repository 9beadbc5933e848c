"""One self-contained HTML page per training run: `python -m gan_jax.report WORKDIR`.

run_files.py reads the run's files (nothing in WORKDIR changes but the page),
figures.py turns its pictures and curves into data URIs, page.py lays them
out, command.py is the command line.
"""
