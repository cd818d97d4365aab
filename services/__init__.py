"""bssbus inbound side: spyne endpoints that serve the contracts in wsdl/."""
