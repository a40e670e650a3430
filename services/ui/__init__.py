"""What the client service's device shell and the server's admin page share: plugins' screens
(`screens`: who may see which, titled in the reader's language, versioned URLs) and how a
plugin's UI folder is served safely, with the same security headers on both apps (`web`)."""
