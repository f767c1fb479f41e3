namespace Qed.Cli.CommandLine;

/// <summary>A <c>--name</c> option known to <see cref="GetOpt"/>.</summary>
/// <param name="Name">The name without the leading dashes.</param>
/// <param name="HasArgument">True when the option takes a value (<c>--name=value</c> or <c>--name value</c>).</param>
/// <param name="Key">What the parsed option is reported as: a short option letter it aliases, or the long name itself.</param>
internal sealed record LongOption(string Name, bool HasArgument, string Key)
{
    /// <summary>A long option reported under its own name.</summary>
    public LongOption(string name, bool hasArgument) : this(name, hasArgument, name) { }
}
