"""The lambda-transfer study, one module per concern.

- `settings`: the sizes of a study (`FULL`, `QUICK`), its setups, and the
  groups of runs trained together;
- `data`: the three data sets;
- `grid`: the factor grid of each scale;
- `models`: the networks of a group (MLP, CNN, transformer members);
- `training`: one group of networks, trained as members of one Keras model;
- `derived`: records of the rules that only rescale another's factor;
- `curves`: best factors, drifts, the cost of reusing a factor, per axis;
- `comparisons`: candidate rules, baselines, the families side by side;
- `summary`: the study's summary, per setup and over setups;
- `report`: the tables and the plots.

`benchmarks/lambda_transfer.py` runs it.
"""
