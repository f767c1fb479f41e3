namespace Qed.Nbd.Client;

/// <summary>
/// An NBD server refused a request (<see cref="ErrorName"/> says with which error), refused the handshake, or broke the
/// protocol or the connection (then every request in flight fails with it, and the client is unusable).
/// </summary>
public sealed class NbdException : QedException
{
    /// <summary>Creates the exception with a one-line message (a connection or handshake failure).</summary>
    public NbdException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the error that caused it.</summary>
    public NbdException(string message, Exception? innerException) : base(message, innerException) { }

    /// <summary>Creates the exception for a request the server answered with the NBD error <paramref name="error"/>.</summary>
    internal NbdException(string message, uint error) : base(message)
    {
        Error = unchecked((int)error);
        ErrorName = NbdErrors.Name(error);
    }

    /// <summary>The error the server answered a request with (an errno value as NBD numbers them: 5 is <c>EIO</c>), or 0 when the connection itself failed.</summary>
    public int Error { get; }

    /// <summary>The errno name of <see cref="Error"/> (<c>EIO</c>, <c>ENOSPC</c>...), or null when the connection itself failed.</summary>
    public string? ErrorName { get; }
}
