"""The platform's own state: which plugins an administrator switched off, plugin settings.

It lives in the schema `mesh_platform`, migrated by the server before any plugin, and reaches
the other services over the bus (mesh.control).
"""
