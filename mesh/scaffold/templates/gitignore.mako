__pycache__/
*.egg-info/
build/
dist/
.mesh/
