"""The networks the lab trains: the NNX transformer (`transformer`). Models know nothing about
tasks; a task (`icl_lab.tasks`) says which model it trains and how its data is read in."""
