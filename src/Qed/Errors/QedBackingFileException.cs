namespace Qed;

/// <summary>A backing file cannot be opened or would create a loop in the chain, or a write needs backing data the image was opened without.</summary>
public sealed class QedBackingFileException : QedException
{
    /// <summary>Creates the exception with a one-line message naming the backing file.</summary>
    public QedBackingFileException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the error that caused it.</summary>
    public QedBackingFileException(string message, Exception? innerException) : base(message, innerException) { }
}
