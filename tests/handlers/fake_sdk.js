'use strict';
// Stand-ins for the AWS SDK v3 modules the handlers load: same package, client and command names
// as the real ones (a misspelt name in a handler fails here as it would in Lambda), no network.
// Each answer is keyed by command name: a value, a function of the input, or an Error to throw.

const PACKAGES = {
  '@aws-sdk/client-codebuild': ['CodeBuildClient', ['StartBuildCommand', 'BatchGetBuildsCommand']],
  '@aws-sdk/client-ecr': ['ECRClient', ['DescribeImagesCommand', 'BatchGetImageCommand', 'PutImageCommand']],
};

function awsError(name, message = `${name} from the fake SDK`) {
  const e = new Error(message);
  e.name = name;
  return e;
}

function fakeSdk(answers = {}) {
  const sent = [];
  const loaded = [];
  const clients = [];
  const modules = {};
  for (const [pkg, [clientName, commands]] of Object.entries(PACKAGES)) {
    const mod = {};
    mod[clientName] = class {
      constructor(config) {
        this.config = config;
        clients.push(clientName);
      }

      async send(command) {
        const name = command.constructor.name;
        sent.push({ client: clientName, command: name, input: command.input });
        if (!(name in answers)) throw new Error(`the test gave no answer for ${name}`);
        let answer = answers[name];
        if (typeof answer === 'function') answer = await answer(command.input, sent.length);
        if (answer instanceof Error) throw answer;
        return structuredClone(answer);
      }
    };
    for (const commandName of commands) {
      // A named class: the handlers' stub dispatch and error messages use constructor.name.
      mod[commandName] = { [commandName]: class { constructor(input) { this.input = input; } } }[commandName];
    }
    modules[pkg] = mod;
  }
  const load = (pkg) => {
    loaded.push(pkg);
    if (!(pkg in modules)) throw new Error(`Cannot find module '${pkg}' (not in the fake SDK)`);
    return modules[pkg];
  };
  const commands = () => sent.map((s) => s.command);
  return { load, sent, loaded, clients, commands };
}

module.exports = { fakeSdk, awsError };
