namespace Qed;

/// <summary>The file is not a valid image of its format (a header field or table offset breaks the rules), or options given to create one would not make a valid one.</summary>
public sealed class QedFormatException : QedException
{
    /// <summary>Creates the exception with a one-line message naming the field and its value.</summary>
    public QedFormatException(string message) : base(message) { }
}
