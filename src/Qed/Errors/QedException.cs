namespace Qed;

/// <summary>Base of every error the qed engine reports about an image, its backing chain or a request.</summary>
/// <remarks>The message is one line that names what was wrong; callers can print it as is.</remarks>
public class QedException : IOException
{
    /// <summary>Creates the exception with a one-line message.</summary>
    public QedException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the error that caused it.</summary>
    public QedException(string message, Exception? innerException) : base(message, innerException) { }
}
