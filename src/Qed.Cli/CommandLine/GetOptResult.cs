namespace Qed.Cli.CommandLine;

/// <summary>What <see cref="GetOpt"/> found: the options in command-line order and the operands.</summary>
/// <param name="Options">The options in the order they were given.</param>
/// <param name="Positionals">The arguments that are not options, in order.</param>
internal sealed record GetOptResult(IReadOnlyList<ParsedOption> Options, IReadOnlyList<string> Positionals);
