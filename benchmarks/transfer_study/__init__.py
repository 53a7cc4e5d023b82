"""The lambda-transfer study, one module per concern.

- `settings`: the sizes of a study (`FULL`, `QUICK`), its setups, and the
  groups of runs trained together;
- `data`: the two data sets;
- `grid`: the factor grid of each scale;
- `training`: one group of networks, trained as members of one Keras model;
- `summary`: best factors, drifts, the cost of reusing a factor;
- `report`: the README tables and the plot.

`benchmarks/lambda_transfer.py` runs it.
"""
