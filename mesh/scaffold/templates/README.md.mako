# ${title}

The `${name}` plugin for mesh, made by `mesh plugin new`.
It runs a part on the ${services_text}.

```sh
pip install -e .          # mesh finds it through its mesh.plugins entry point
mesh plugin list          # ${name} is listed, with its services
mesh up                   # and runs
pytest                    # its tests, on the in-process bus and SQLite
pytest --mesh-bus=rabbitmq --mesh-db=postgresql
```

| file | what |
|---|---|
| `${package}/plugin.toml` | the manifest: name, version, the part on each service${", storage" if storage else ""} |
| `${package}/contract.py` | the contract: settings, RPCs and tasks, as pydantic models |
% for service in services:
| `${package}/${service}.py` | the part on the ${service} |
% endfor
% if storage:
| `${package}/models.py` | the tables, in the schema `${schema}` |
| `${package}/migrations/` | their Alembic revisions (`mesh db revision --plugin ${name} -m ...` adds one) |
% endif
% if ui:
| `${package}/ui/` | the device screen (`screen.js`, shown by the shell at the client service's `/`), the admin screen (`admin.js`, on the admin page), its icon and strings (`i18n/en.json`) |
% endif
| `tests/test_${name}.py` | the tests, on mesh's testing kit |

mesh's plugin guide (`docs/plugin-guide.md`) says what each part can do.
