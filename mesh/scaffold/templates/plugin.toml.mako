name = "${name}"
title = "${title}"
version = "${version}"
description = "${description}"
contract = "${package}.contract:${cls}Contract"

[services]
% for service in services:
${service} = "${package}.${service}:${cls}${service.capitalize()}"
% endfor
% if storage:

[storage]
schema = "${schema}"
migrations = "migrations"
metadata = "${package}.models:Base"
% endif
% if ui:

[permissions.groups]
screens = "The ${title} screens"

[permissions.screens]
use = "Open the ${title} device screen${' and greet' if server else ''}"

# The browser files are in ui/ (docs/plugin-guide.md, "Writing a screen"): the device shell on
# the client service shows [[screens]], the admin page [[admin_screens]].
[ui]
folder = "ui"
default_locale = "en"
locales = ["en"]

[[screens]]
id = "main"
title = "${title}"
icon = "icons/screen.svg"
module = "screen.js"
category = "${title}"
keywords = ["${name}"]
permissions = ["${name}/screens/use"]

[[admin_screens]]
id = "settings"
title = "${title} settings"
icon = "icons/screen.svg"
module = "admin.js"
category = "${title}"
permissions = ["mesh/admin/operate"]
% endif
