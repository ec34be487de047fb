"""The paper's runs as YAML recipes, installed as `rocket_recipes` (see `rocket_plugins` for the name check)."""
if __name__ != "rocket_recipes":
    raise ImportError(f"import rocket_recipes, not {__name__}: this folder is installed as rocket_recipes")
