namespace Qed.Cli.CommandLine;

/// <summary>A command line parsed by an <see cref="OptionTable"/>: the options' values and the operands.</summary>
internal sealed class ParsedArguments
{
    private readonly OptionTable _table;
    private readonly List<(CliOption Option, object? Value)> _values;

    /// <summary>Creates the result.</summary>
    public ParsedArguments(OptionTable table, List<(CliOption Option, object? Value)> values, IReadOnlyList<string> positionals, bool helpRequested)
    {
        _table = table;
        _values = values;
        Positionals = positionals;
        HelpRequested = helpRequested;
    }

    /// <summary>The arguments that are not options, in order.</summary>
    public IReadOnlyList<string> Positionals { get; }

    /// <summary>True when <c>-h</c> or <c>--help</c> was met; the options after it were not looked at.</summary>
    public bool HelpRequested { get; }

    /// <summary>True when the flag or option was given.</summary>
    public bool Has(CliOption option)
    {
        Require(option);
        return _values.Exists(v => v.Option == option);
    }

    /// <summary>The value of the last <paramref name="option"/> given, or <paramref name="fallback"/>.</summary>
    public T Get<T>(CliOption<T> option, T fallback)
    {
        Require(option);
        int last = _values.FindLastIndex(v => v.Option == option);
        return last < 0 ? fallback : (T)_values[last].Value!;
    }

    /// <summary>The value of the last <paramref name="option"/> given, or null.</summary>
    public T? Get<T>(CliOption<T> option) where T : class => Get(option, null!);

    /// <summary>The value of the last <paramref name="option"/> given, or null.</summary>
    public T? GetValue<T>(CliOption<T> option) where T : struct
    {
        Require(option);
        int last = _values.FindLastIndex(v => v.Option == option);
        return last < 0 ? null : (T)_values[last].Value!;
    }

    /// <summary>Every value of a repeatable option, in order.</summary>
    public IReadOnlyList<T> All<T>(CliOption<T> option)
    {
        Require(option);
        return [.. _values.Where(v => v.Option == option).Select(v => (T)v.Value!)];
    }

    /// <summary>Runs the checks qemu-img makes after its getopt loop, in table order, on each option's last value.</summary>
    /// <exception cref="CliException">A value qemu-img refuses at that point.</exception>
    public void CheckLater()
    {
        foreach (var option in _table.Options)
        {
            int last = _values.FindLastIndex(v => v.Option == option);
            if (last >= 0)
            {
                option.CheckLater(_values[last].Value);
            }
        }
    }

    /// <summary>The one image file name a command takes; qemu-img's usage error when there is not exactly one.</summary>
    /// <exception cref="UsageException">No file name, or more than one.</exception>
    public string SingleImage() =>
        Positionals.Count == 1 ? Positionals[0] : throw new UsageException("Expecting one image file name");

    /// <summary>A command asking for an option its table does not declare is a bug: help would not show it.</summary>
    private void Require(CliOption option)
    {
        if (!_table.Contains(option))
        {
            throw new InvalidOperationException($"'{_table.Command}' reads {option.Spellings}, which its option table does not declare.");
        }
    }
}
