namespace Qed.Cli.CommandLine;

/// <summary>
/// The <c>-o key=value,key=value</c> lists of qemu-img create and convert. Values may contain a comma
/// written twice (<c>backing_file=a,,b</c> is the name <c>a,b</c>); a later key replaces an earlier one.
/// </summary>
internal sealed class ImageOptionList
{
    private readonly List<KeyValuePair<string, string>> _entries;

    private ImageOptionList(List<KeyValuePair<string, string>> entries)
    {
        _entries = entries;
    }

    /// <summary>The entries in the order given, duplicates included.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Entries => _entries;

    /// <summary>An empty list.</summary>
    public static ImageOptionList Empty { get; } = new([]);

    /// <summary>Parses the values of every <c>-o</c> given, joined as qemu-img joins them (with a comma).</summary>
    /// <exception cref="CliException">An element is empty (<c>size=1M,</c>): <c>Invalid option list: ...</c>.</exception>
    public static ImageOptionList Parse(IReadOnlyList<string> optionArguments)
    {
        if (optionArguments.Count == 0)
        {
            return Empty;
        }
        string text = string.Join(',', optionArguments);
        var entries = new List<KeyValuePair<string, string>>();
        int i = 0;
        while (true)
        {
            int keyStart = i;
            while (i < text.Length && text[i] != '=' && text[i] != ',')
            {
                i++;
            }
            string key = text[keyStart..i];
            string value;
            if (i < text.Length && text[i] == '=')
            {
                i++;
                var builder = new System.Text.StringBuilder();
                while (i < text.Length)
                {
                    if (text[i] == ',')
                    {
                        if (i + 1 < text.Length && text[i + 1] == ',')
                        {
                            builder.Append(',');
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    builder.Append(text[i]);
                    i++;
                }
                value = builder.ToString();
            }
            else
            {
                // A bare key is a flag set to "on", as QEMU's option parser treats it.
                value = "on";
            }
            if (key.Length == 0)
            {
                throw new CliException($"Invalid option list: {text}");
            }
            entries.Add(new KeyValuePair<string, string>(key, value));
            if (i >= text.Length)
            {
                break;
            }
            i++; // the separating comma
            if (i >= text.Length)
            {
                throw new CliException($"Invalid option list: {text}");
            }
        }
        return new ImageOptionList(entries);
    }

    /// <summary>True when the list asks for the option help (<c>-o help</c> or <c>-o ?</c>).</summary>
    public bool IsHelpRequest => _entries.Any(e => e.Key is "help" or "?" && e.Value == "on");

    /// <summary>The last value given for <paramref name="key"/>, or null.</summary>
    public string? Get(string key)
    {
        for (int i = _entries.Count - 1; i >= 0; i--)
        {
            if (_entries[i].Key == key)
            {
                return _entries[i].Value;
            }
        }
        return null;
    }

    /// <summary>True when <paramref name="key"/> was given.</summary>
    public bool Contains(string key) => Get(key) is not null;
}
