"""The platform's own state: which plugins an administrator switched off, plugin settings,
uploaded plugins, and the task ledger (mesh.platform.ledger).

It lives in the schema `mesh_platform`, migrated by the server before any plugin, and reaches
the other services over the bus (mesh.control, and the platform RPCs).
"""
