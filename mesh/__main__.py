from mesh.cli.main import main

if __name__ == "__main__":  # the worker's process pool imports this module again
    main()
