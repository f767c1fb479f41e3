namespace Qed.Cli.CommandLine;

/// <summary>What <see cref="GetOpt"/> found: the options in command-line order and the remaining positional arguments.</summary>
internal sealed class ParsedArguments
{
    /// <summary>Creates the result.</summary>
    public ParsedArguments(IReadOnlyList<ParsedOption> options, IReadOnlyList<string> positionals)
    {
        Options = options;
        Positionals = positionals;
    }

    /// <summary>The options in the order they were given.</summary>
    public IReadOnlyList<ParsedOption> Options { get; }

    /// <summary>The arguments that are not options, in order.</summary>
    public IReadOnlyList<string> Positionals { get; }
}
