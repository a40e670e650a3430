[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "${distribution}"
version = "${version}"
description = "${description}"
requires-python = ">=3.11"
dependencies = ["${mesh_requirement}"]

[project.optional-dependencies]
test = ["${mesh_testing_requirement}"]

# How mesh finds the plugin: the entry point names its package, which holds plugin.toml.
[project.entry-points."mesh.plugins"]
${name} = "${package}"

[tool.setuptools]
packages = ${packages}

[tool.setuptools.package-data]
% if ui:
${package} = ["plugin.toml", "py.typed", "ui/*.js", "ui/icons/*.svg", "ui/i18n/*.json"]
% else:
${package} = ["plugin.toml", "py.typed"]
% endif

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 100
target-version = "py311"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF", "ASYNC"]

[tool.mypy]
python_version = "3.11"
plugins = ["pydantic.mypy"]
