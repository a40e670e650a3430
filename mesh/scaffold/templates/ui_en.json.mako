{
  "screens.main.title": "${title}",
  "admin_screens.settings.title": "${title} settings",
% if server:
  "name": "Name",
  "greet": "Greet",
% else:
  "hello": "Hello, {user}!",
% endif
  "save": "Save",
  "saved": "saved"
}
