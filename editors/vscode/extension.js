// dfm for VS Code: starts `dfm lsp` (the language server) for .dfm files. Colours come from the
// TextMate grammar in syntaxes/; diagnostics, completion, hover, formatting, quick fixes, inlay hints
// and the outline come from the server. No build step: plain CommonJS, one dependency
// (vscode-languageclient), installed with `npm install` in this folder.
"use strict";

const vscode = require("vscode");
const { LanguageClient, State } = require("vscode-languageclient/node");

let client;
let output;

function serverOptions() {
  const config = vscode.workspace.getConfiguration("dfm");
  const command = config.get("serverPath") || "dfm";
  const args = config.get("serverArgs") || ["lsp"];
  // no `transport`: the server speaks over stdin/stdout, which is the default
  return { command, args };
}

async function start() {
  output = output || vscode.window.createOutputChannel("dfm language server");
  client = new LanguageClient(
    "dfm",
    "dfm language server",
    serverOptions(),
    {
      documentSelector: [
        { scheme: "file", language: "dfm" },
        { scheme: "untitled", language: "dfm" },
      ],
      outputChannel: output,
    },
  );
  try {
    await client.start();
  } catch (err) {
    const { command } = serverOptions();
    vscode.window.showErrorMessage(
      `dfm: could not start the language server (\`${command} lsp\`): ${err.message || err}. ` +
        "Install dfm in the Python environment VS Code sees, or set `dfm.serverPath` to the `dfm` " +
        "executable (e.g. /path/to/project/.venv/bin/dfm).",
    );
  }
}

async function stop() {
  if (client && client.state === State.Running) {
    await client.stop();
  }
  client = undefined;
}

async function restart() {
  await stop();
  await start();
}

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("dfm.restartServer", restart),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("dfm.serverPath") || event.affectsConfiguration("dfm.serverArgs")) {
        restart();
      }
    }),
  );
  return start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
