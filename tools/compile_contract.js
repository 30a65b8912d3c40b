#!/usr/bin/env node
// Compile one Solidity contract offline with solcjs and print its JSON artifact.
//
//   npm install --prefix .tools solc
//   node tools/compile_contract.js src/waiaas/chains/evm/contracts/TestToken.sol TestToken \
//       > src/waiaas/chains/evm/contracts/TestToken.json
//
// The artifact (ABI + bytecode) is committed so tests never need a compiler. Re-run only
// when the contract source changes.
'use strict';
const fs = require('fs');
const path = require('path');

function loadSolc() {
  const local = path.join(__dirname, '..', '.tools', 'node_modules', 'solc');
  try {
    return require(local);
  } catch (err) {
    return require('solc');
  }
}

const [file, name, evmVersion = 'cancun'] = process.argv.slice(2);
if (!file || !name) {
  console.error('usage: node tools/compile_contract.js <file.sol> <ContractName> [evmVersion]');
  process.exit(2);
}
const solc = loadSolc();
const source = path.basename(file);
const input = {
  language: 'Solidity',
  sources: { [source]: { content: fs.readFileSync(file, 'utf8') } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion,
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = out.errors || [];
const errors = problems.filter((e) => e.severity === 'error');
for (const warning of problems.filter((e) => e.severity !== 'error')) {
  console.error(warning.formattedMessage);
}
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join('\n'));
  process.exit(1);
}
const contract = out.contracts[source][name];
const artifact = {
  contractName: name,
  sourceName: source,
  compiler: 'solcjs ' + solc.version(),
  evmVersion,
  optimizer: { enabled: true, runs: 200 },
  abi: contract.abi,
  bytecode: '0x' + contract.evm.bytecode.object,
  deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 1) + '\n');
