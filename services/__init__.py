"""The four programs of the mesh. Each is `mesh run <kind>`; they differ in what they host.

They are registered as entry points in the `mesh.services` group (pyproject.toml) and found
by kind through `mesh.programs.service_class`: the library never imports this package.
"""
