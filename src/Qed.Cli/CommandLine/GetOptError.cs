namespace Qed.Cli.CommandLine;

/// <summary>The kinds of mistakes <see cref="GetOpt"/> reports.</summary>
internal enum GetOptError
{
    /// <summary>An option that is not known, an ambiguous long-option prefix, or a value given to a flag (<c>--flag=x</c>).</summary>
    Unrecognized,
    /// <summary>An option that needs a value came last.</summary>
    MissingArgument,
}
