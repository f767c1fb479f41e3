namespace Qed;

/// <summary>The file is not a valid QED image: a header field or table offset breaks the format's rules.</summary>
public sealed class QedFormatException : QedException
{
    /// <summary>Creates the exception with a one-line message naming the field and its value.</summary>
    public QedFormatException(string message) : base(message) { }
}
