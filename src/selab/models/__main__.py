"""``python -m selab.models``: the parameter table of every backbone (README, "Backbones")."""

from .zoo import parameter_table

if __name__ == "__main__":
    print(parameter_table())
