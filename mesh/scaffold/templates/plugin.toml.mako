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
